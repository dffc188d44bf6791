"""The Redfish adapter's promises that need no BMC: the password never shows in a repr or an
error, and a BMC that is not there is one typed error naming the server."""

from __future__ import annotations

import pytest

from gpucloud.core.baremetal import PowerAction
from gpucloud.core.errors import EngineError
from gpucloud.engines.redfish import Bmc, BmcAccess, BmcError, _shown
from tests.servers import free_port


def test_the_password_is_never_in_a_repr_or_an_error() -> None:
    access = BmcAccess("gpu-a02", f"http://admin:in-url-pw@127.0.0.1:{free_port()}", "admin",
                       "hunter2-secret")
    assert "hunter2-secret" not in repr(access)
    with pytest.raises(BmcError) as caught:
        Bmc(access).power(PowerAction.ON)
    message = str(caught.value)
    assert message.startswith("gpu-a02: ") and "the BMC at http://127.0.0.1:" in message
    assert "does not answer" in message
    assert "hunter2-secret" not in message and "in-url-pw" not in message
    assert isinstance(caught.value, EngineError)  # the API answers 502 with the message


def test_an_address_is_shown_without_its_login() -> None:
    assert _shown("https://u:p@10.0.1.2:8443/redfish/v1/Systems/1") == "https://10.0.1.2:8443"
    assert _shown("https://10.0.1.2") == "https://10.0.1.2"
