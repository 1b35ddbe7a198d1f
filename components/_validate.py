"""Early input validation shared by the components.

Every check raises :class:`ValueError` naming the input, what was expected and what was
found, so ``pulumi up`` stops before any cloud call is made. Values that are still
:class:`pulumi.Output` are checked when they resolve, and the checked Output is what the
component passes on, so a bad value still fails the update instead of being ignored.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from typing import TypeVar

import pulumi

__all__ = [
    "DIGEST_IMAGE_RE",
    "check_bounds",
    "check_cidrs",
    "check_digest_image",
    "check_dns_label",
    "checked",
]

T = TypeVar("T")

#: ``registry/repo[:tag]@sha256:<64 hex>``: a tag alone can be moved, a digest cannot.
DIGEST_IMAGE_RE = re.compile(r"^[a-z0-9][a-z0-9._/:-]*(?::[\w][\w.-]*)?@sha256:[0-9a-f]{64}$")
_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def checked(value: pulumi.Input[T], check: Callable[[T], T]) -> pulumi.Input[T]:
    """Run ``check`` on a plain value now, or on an Output when it resolves.

    Args:
        value: A plain value or an Output of one.
        check: Returns the value when it is valid, raises ValueError otherwise.

    Returns:
        The checked value, or an Output that fails when the check fails.
    """
    if isinstance(value, pulumi.Output):
        return value.apply(check)
    # pulumi.Input[T] also admits an Awaitable; components only receive plain values or Outputs.
    return check(value)  # type: ignore[arg-type]


def check_cidrs(input_name: str, cidrs: Sequence[str]) -> list[str]:
    """Return the CIDRs as strings, refusing an empty list and any that opens to the world.

    Args:
        input_name: The input's name, used in the error message.
        cidrs: IPv4 or IPv6 networks in CIDR notation.

    Raises:
        ValueError: The list is empty, a value is not a CIDR, or a value has prefix length 0.
    """
    if isinstance(cidrs, str) or not isinstance(cidrs, Sequence):
        raise ValueError(f"{input_name}: expected a list of CIDRs, found {cidrs!r}")
    if not cidrs:
        raise ValueError(f"{input_name}: expected at least one CIDR allowed to reach the API, found none")
    out: list[str] = []
    for cidr in cidrs:
        try:
            network = ipaddress.ip_network(str(cidr), strict=False)
        except ValueError as exc:
            raise ValueError(f"{input_name}: expected a CIDR such as 203.0.113.0/24, found {cidr!r}") from exc
        if network.prefixlen == 0:
            raise ValueError(
                f"{input_name}: {cidr!r} opens the Kubernetes API to the whole internet; "
                "list the networks your operators deploy from"
            )
        out.append(str(network))
    return out


def check_bounds(input_name: str, minimum: int, maximum: int, cap: int) -> tuple[int, int]:
    """Check an autoscaling range: ``0 <= minimum <= maximum <= cap``.

    Args:
        input_name: The inputs' common name (``nodeCount`` for ``nodeCountMin``/``nodeCountMax``).
        minimum: Lower bound.
        maximum: Upper bound.
        cap: The largest upper bound allowed.

    Raises:
        ValueError: A bound is not an integer or the range is empty or above the cap.
    """
    for label, bound in (("Min", minimum), ("Max", maximum)):
        if isinstance(bound, bool) or not isinstance(bound, int):
            raise ValueError(f"{input_name}{label}: expected an integer, found {bound!r}")
    if minimum < 0 or maximum < 1 or minimum > maximum:
        raise ValueError(
            f"{input_name}Min/{input_name}Max: expected 0 <= min <= max and max >= 1, "
            f"found min={minimum} max={maximum}"
        )
    if maximum > cap:
        raise ValueError(f"{input_name}Max: expected at most {cap}, found {maximum}")
    return minimum, maximum


def check_digest_image(input_name: str, image: str) -> str:
    """Refuse a container image that is not pinned by ``@sha256:`` digest.

    Raises:
        ValueError: The reference has no digest or a malformed one.
    """
    if not isinstance(image, str) or not DIGEST_IMAGE_RE.match(image):
        raise ValueError(
            f"{input_name}: expected an image pinned as name[:tag]@sha256:<64 hex>, found {image!r}"
        )
    return image


def check_dns_label(input_name: str, value: str) -> str:
    """Refuse a name that cannot be a Kubernetes object name (RFC 1123 label).

    Raises:
        ValueError: The value is not a lowercase DNS label of at most 63 characters.
    """
    if not isinstance(value, str) or not _DNS_LABEL_RE.match(value):
        raise ValueError(f"{input_name}: expected a lowercase DNS label (a-z, 0-9, '-'), found {value!r}")
    return value
