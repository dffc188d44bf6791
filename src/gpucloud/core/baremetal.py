"""A bare-metal server's lifecycle: one enum, one transition table, and the pure decisions
the controller applies (what to do next in each state, given what the BMC reports).

available -> provisioning (boot image inserted, boot once from it, power on) -> leased ->
releasing (power off, media ejected) -> cleaning (the wipe image erases the disks and powers
the server off; recorded as an attestation) -> available. Any failed step: maintenance, with
the reason, until an operator returns the server. A reimage is leased -> provisioning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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
HELD = frozenset({_B.PROVISIONING, _B.LEASED})  # a tenant holds it (and pays for it)


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
    DONE = "done"  # this state's work is complete: move on


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


# How long a state's work may take before the server goes to maintenance.
TIMEOUT_S: Mapping[BareMetalState, float] = {
    _B.PROVISIONING: 900.0, _B.RELEASING: 300.0, _B.CLEANING: 4 * 3600.0,
}


def next_step(state: BareMetalState, seen: Observed, done: Progress) -> Step:
    """The next step of ``state``'s work. Level-triggered: the same inputs give the same step,
    and nothing the BMC already shows done is asked again."""
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


def timed_out(state: BareMetalState, waited_s: float) -> bool:
    limit = TIMEOUT_S.get(state)
    return limit is not None and waited_s > limit
