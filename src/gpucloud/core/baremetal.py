"""A bare-metal server's lifecycle: one enum, one transition table, and the pure decisions
the controller applies (what to do next in each state, given what the BMC reports).

available -> provisioning (boot image inserted, boot once from it, power on) -> leased ->
releasing (power off, media ejected) -> cleaning (the wipe image erases the disks and powers
the server off; recorded as an attestation) -> available. Any failed step: maintenance, with
the reason, until an operator returns the server. A reimage is leased -> provisioning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from enum import StrEnum

from gpucloud.core.errors import IllegalTransition


class BareMetalState(StrEnum):
    AVAILABLE = "available"
    PROVISIONING = "provisioning"
    LEASED = "leased"
    RELEASING = "releasing"
    CLEANING = "cleaning"
    MAINTENANCE = "maintenance"


_B = BareMetalState
TRANSITIONS: Mapping[BareMetalState, frozenset[BareMetalState]] = {
    _B.AVAILABLE: frozenset({_B.PROVISIONING, _B.MAINTENANCE}),
    _B.PROVISIONING: frozenset({_B.LEASED, _B.RELEASING, _B.MAINTENANCE}),
    _B.LEASED: frozenset({_B.PROVISIONING, _B.RELEASING, _B.MAINTENANCE}),
    _B.RELEASING: frozenset({_B.CLEANING, _B.MAINTENANCE}),
    _B.CLEANING: frozenset({_B.AVAILABLE, _B.MAINTENANCE}),
    # an operator returns it (it is cleaned first: the last tenant's data may be on it)
    _B.MAINTENANCE: frozenset({_B.CLEANING}),
}
# The scheduler places no job on a server in these states (a tenant's, or being wiped).
NOT_SCHEDULABLE = frozenset({_B.PROVISIONING, _B.LEASED, _B.RELEASING, _B.CLEANING,
                             _B.MAINTENANCE})
HELD = frozenset({_B.PROVISIONING, _B.LEASED})  # a tenant holds it (and pays once leased)
# States with BMC work for the controller; the others wait for a person.
WORKING = frozenset({_B.PROVISIONING, _B.RELEASING, _B.CLEANING})
# Where a state goes once its work is done.
AFTER: Mapping[BareMetalState, BareMetalState] = {
    _B.PROVISIONING: _B.LEASED, _B.RELEASING: _B.CLEANING, _B.CLEANING: _B.AVAILABLE,
}


def check_transition(server: str, current: BareMetalState, target: BareMetalState) -> None:
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(server, current.value, target.value)


class PowerAction(StrEnum):
    ON = "on"
    OFF = "off"
    RESET = "reset"


class Step(StrEnum):
    """What the controller does to a server on this pass."""

    INSERT_MEDIA = "insert-media"  # put the image in the virtual CD and boot once from it
    POWER_ON = "power-on"  # on, or a reset when already on (so that it boots the image)
    BOOTED = "booted"  # the BMC shows it on: note it (the wipe's power-off comes after)
    POWER_OFF = "power-off"
    EJECT_MEDIA = "eject-media"
    WAIT = "wait"  # the BMC is still carrying out the last request
    DONE = "done"  # this state's work is complete: move on (to AFTER[state])
    IDLE = "idle"  # no BMC work in this state (available, leased, maintenance)


@dataclass(frozen=True)
class Observed:
    """What the BMC reports now."""

    power_on: bool
    media: str | None  # the image URL in the virtual CD, None when empty


@dataclass(frozen=True)
class Progress:
    """What the controller has done in the current state (stored on the row, reset on entry)."""

    media_inserted: bool = False
    power_requested: bool = False  # power on (or reset) asked in this state
    booted: bool = False  # seen on after that
    power_off_requested: bool = False

    def to_json(self) -> dict[str, bool]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, object] | None) -> Progress:
        names = {f.name for f in fields(cls)}
        return cls(**{k: bool(v) for k, v in (data or {}).items() if k in names})


# How long a state's work may take before the server goes to maintenance.
TIMEOUT_S: Mapping[BareMetalState, float] = {
    _B.PROVISIONING: 900.0, _B.RELEASING: 300.0, _B.CLEANING: 4 * 3600.0,
}


def next_step(state: BareMetalState, seen: Observed, done: Progress) -> Step:
    """The next step of ``state``'s work. Level-triggered: the same inputs give the same step,
    and nothing the BMC already shows done is asked again."""
    if state not in WORKING:
        return Step.IDLE
    if state in (_B.PROVISIONING, _B.CLEANING):
        if not done.media_inserted:
            return Step.INSERT_MEDIA
        if not done.power_requested:
            return Step.POWER_ON
        if not done.booted:
            return Step.BOOTED if seen.power_on else Step.WAIT
        if state is _B.PROVISIONING:
            return Step.DONE
        # cleaning: the wipe image powers the server off once the disks are erased
        return Step.WAIT if seen.power_on else Step.DONE
    if state is _B.RELEASING:
        if seen.power_on:
            return Step.WAIT if done.power_off_requested else Step.POWER_OFF
        if seen.media is not None:
            return Step.EJECT_MEDIA
        return Step.DONE
    return Step.DONE


def progressed(done: Progress, step: Step) -> Progress:
    """What the progress is once ``step`` has been carried out."""
    changes = {Step.INSERT_MEDIA: "media_inserted", Step.POWER_ON: "power_requested",
               Step.BOOTED: "booted", Step.POWER_OFF: "power_off_requested"}
    name = changes.get(step)
    return done if name is None else Progress(**{**done.to_json(), name: True})


def timed_out(state: BareMetalState, waited_s: float) -> bool:
    limit = TIMEOUT_S.get(state)
    return limit is not None and waited_s > limit


@dataclass(frozen=True)
class Candidate:
    """A server a lease could take: registered for bare metal and not retired."""

    name: str
    model: str
    state: BareMetalState
    busy: bool  # jobs still hold GPUs on its node: it is not free to lease whole
    priced: bool


class Refusal(StrEnum):
    INVALID = "invalid"  # the request itself is wrong
    UNKNOWN = "unknown"  # no such server or model
    TAKEN = "taken"  # it exists but cannot be leased now


def pick_server(candidates: Sequence[Candidate], *, server: str | None,
                model: str | None) -> Candidate | tuple[Refusal, str]:
    """The server a lease takes, or why none can be (a sentence that says what to do)."""
    if (server is None) == (model is None):
        return Refusal.INVALID, ("name a server (--server NAME) or a server model "
                                 "(--model MODEL), one of the two")
    if server is not None:
        found = next((c for c in candidates if c.name == server.lower()), None)
        if found is None:
            return Refusal.UNKNOWN, (f"no bare-metal server {server!r}; 'gpucloud baremetal "
                                     "list' shows them")
        return found if _free(found) else (Refusal.TAKEN, _why_not(found))
    assert model is not None
    of_model = [c for c in candidates if c.model.lower() == model.lower()]
    if not of_model:
        models = sorted({c.model for c in candidates})
        return Refusal.UNKNOWN, (f"no bare-metal server of model {model!r}; models: "
                                 + (", ".join(models) if models else "none registered"))
    free = sorted((c for c in of_model if _free(c)), key=lambda c: c.name)
    if free:
        return free[0]
    return Refusal.TAKEN, (f"none of the {len(of_model)} server(s) of model {model} can be "
                           f"leased now: {_why_not(of_model[0])}")


def _free(c: Candidate) -> bool:
    return c.state is _B.AVAILABLE and not c.busy and c.priced


def _why_not(c: Candidate) -> str:
    if c.state is not _B.AVAILABLE:
        return f"{c.name} is {c.state.value}, not available"
    if c.busy:
        return f"{c.name} is running jobs; it can be leased once they end"
    return (f"{c.name}: its model {c.model} has no server-hour price; an operator sets one "
            f"with 'gpucloud price set --server {c.model} PRICE'")


def lease_shortfall_minor(balance_minor: int, price_per_hour_minor: int, runway_s: int) -> int:
    """What the wallet lacks (minor units, rounded up) to pay for ``runway_s`` seconds of a
    server at ``price_per_hour_minor``; 0 when covered."""
    need = -(-price_per_hour_minor * runway_s // 3600)
    return max(0, need - balance_minor)
