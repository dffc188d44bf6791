"""A small typed adapter over a server's BMC through Redfish (the ``sushy`` library): what the
bare-metal controller and the power commands need, nothing more.

Every call opens its own connection (a BMC is reached rarely, and a level-triggered caller
keeps nothing between passes). Any failure is a :class:`BmcError` whose message names the
server and what failed, never the password: sushy's exceptions are reduced to their status and
message, and the credentials live only in :class:`BmcAccess`, whose repr hides the password.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import sushy  # type: ignore[import-untyped]
from sushy import auth as sushy_auth
from sushy import exceptions as sushy_errors

from gpucloud.core.baremetal import Observed, PowerAction
from gpucloud.core.errors import EngineError

CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 15.0
T = TypeVar("T")
# sushy has no type hints: its resources are these, loosely
System = Any
Media = Any
MediaCollection = Any
CD = "Cd"  # the virtual CD/DVD drive's usual id; any drive taking CD media otherwise


class BmcError(EngineError):
    """The BMC refused a request or did not answer; the message says which and why."""


@dataclass(frozen=True)
class BmcAccess:
    """How to reach one BMC. ``address``: its Redfish URL (``https://10.0.1.2``), optionally
    down to one system (``.../redfish/v1/Systems/ID``) when the BMC manages several."""

    server: str  # the asset's name, for messages
    address: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    verify_tls: bool = False  # BMCs mostly carry self-signed certificates


_POWER = {
    PowerAction.ON: sushy.ResetType.ON,
    PowerAction.OFF: sushy.ResetType.FORCE_OFF,
    PowerAction.RESET: sushy.ResetType.FORCE_RESTART,
}


class Bmc:
    """One server's BMC."""

    def __init__(self, access: BmcAccess) -> None:
        self.access = access

    # -- what the controller reads and does ----------------------------------------------------

    def observe(self) -> Observed:
        system = self._system()
        media = self._cd()
        return Observed(power_on=_is_on(system.power_state), media=media.image or None)

    def power(self, action: PowerAction) -> None:
        """On, off (forced) or reset; asking for the state it already is in is a no-op."""
        def run() -> None:
            system = self._system()
            on = _is_on(system.power_state)
            if (action is PowerAction.ON and on) or (action is PowerAction.OFF and not on):
                return
            if action is PowerAction.RESET and not on:
                system.reset_system(sushy.ResetType.ON)
                return
            system.reset_system(_POWER[action])

        self._call(f"power {action.value}", run)

    def boot_from_media(self, url: str) -> None:
        """Put ``url`` in the virtual CD (ejecting what was there) and boot once from it."""
        def run() -> None:
            media = self._cd()
            if media.image and media.image != url:
                media.eject_media()
            if media.image != url:
                media.insert_media(url, inserted=True, write_protected=True)
            self._system().set_system_boot_options(
                target=sushy.BootSource.CD, enabled=sushy.BootSourceOverrideEnabled.ONCE)

        self._call("boot from virtual media", run)

    def eject_media(self) -> None:
        def run() -> None:
            media = self._cd()
            if media.image:
                media.eject_media()

        self._call("eject virtual media", run)

    # -- plumbing --------------------------------------------------------------------------------

    def _root(self) -> Any:
        parts = urlsplit(self.access.address)
        base = f"{parts.scheme}://{parts.netloc}/redfish/v1"
        credentials = (sushy_auth.BasicAuth(self.access.username, self.access.password)
                       if self.access.username else None)
        # sushy reads 0 retries as "its default" (3 tries, 2 s apart, for a connection error):
        # 1 is one try; a 5xx is tried once more after 1 s. The controller retries next pass.
        return sushy.Sushy(base, auth=credentials, verify=self.access.verify_tls,
                           server_side_retries=1, server_side_retries_delay=1,
                           connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S)

    def _system(self) -> System:
        return self._call("read the system", self._find_system)

    def _find_system(self) -> System:
        root = self._root()
        path = urlsplit(self.access.address).path.rstrip("/")
        if "/Systems/" in path:
            return root.get_system(path)
        members = root.get_system_collection().members_identities
        if len(members) != 1:
            raise BmcError(f"{self.access.server}: the BMC manages {len(members)} systems; "
                           "write the one of this server in its bmc address "
                           "(.../redfish/v1/Systems/ID)")
        return root.get_system(members[0])

    def _cd(self) -> Media:
        def find() -> Media:
            system = self._find_system()
            collection = _media_of(system)
            if collection is None:
                raise BmcError(f"{self.access.server}: the BMC offers no virtual media")
            ids = collection.members_identities
            by_id = {i.rstrip("/").rsplit("/", 1)[-1]: i for i in ids}
            if CD in by_id:
                return collection.get_member(by_id[CD])
            for member in collection.get_members():
                if sushy.VirtualMediaType.CD in (member.media_types or []):
                    return member
            raise BmcError(f"{self.access.server}: the BMC has no virtual CD drive")

        return self._call("read the virtual media", find)

    def _call(self, what: str, run: Callable[[], T]) -> T:
        try:
            return run()
        except BmcError:
            raise
        except sushy_errors.AccessError as err:
            raise BmcError(f"{self.access.server}: {what}: the BMC refused the login "
                           f"(HTTP {err.status_code}); check its BMC user and password") from None
        except sushy_errors.ConnectionError:
            raise BmcError(f"{self.access.server}: {what}: the BMC at "
                           f"{_shown(self.access.address)} does not answer") from None
        except sushy_errors.HTTPError as err:
            raise BmcError(f"{self.access.server}: {what}: the BMC answered HTTP "
                           f"{err.status_code}: {err.detail or err.message}") from None
        except sushy_errors.SushyError as err:
            raise BmcError(f"{self.access.server}: {what}: {type(err).__name__}") from None


def _media_of(system: System
              ) -> MediaCollection | None:
    """The system's virtual media (Redfish 1.13+), else its first manager's."""
    try:
        return system.virtual_media
    except sushy_errors.MissingAttributeError:
        pass
    managers = system.managers
    return managers[0].virtual_media if managers else None


def _is_on(state: object) -> bool:
    return state in (sushy.PowerState.ON, sushy.PowerState.POWERING_OFF)


def _shown(address: str) -> str:
    """The address without any user:password@ an operator may have written into it."""
    parts = urlsplit(address)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{':' + str(parts.port) if parts.port else ''}"
