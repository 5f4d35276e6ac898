"""A distributed job's rendezvous must not listen on a public address.

`torchrun --rdzv-endpoint HOST:PORT` (or `MASTER_ADDR`) names where the workers meet;
the rendezvous and the collective traffic that follows are unauthenticated, so the
address must be on a private network: never 0.0.0.0 or a public IP.
"""

from __future__ import annotations

import ipaddress
import re

from .files import launch_files, logical_lines, read_text
from .registry import Finding, Outcome, Targets, check

ENDPOINT = re.compile(
    r"(?:--rdzv[-_]endpoint|--master[-_]addr)[= ]+[\"']?(\[[^\]]+\]|[^\s\"':]+)"
    r"|\bMASTER_ADDR\s*[:=]\s*[\"']?([^\s\"']+)")


def public(host: str) -> bool:
    """0.0.0.0 / :: (every interface) or a global address; names cannot be judged."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return ip.is_unspecified or ip.is_global


@check("distributed.rendezvous-private",
       verifies="no launch script or job file sets --rdzv-endpoint, --master-addr or "
                "MASTER_ADDR to 0.0.0.0 (::) or a public IP address",
       why="the rendezvous and the collectives after it are unauthenticated: on a "
           "public address anyone can join the job or read its traffic",
       fix="use the head node's private address (or its name on the cluster "
           "network) and keep the port closed to the outside",
       targets=(("code",),))
def rendezvous_private(targets: Targets, on: str) -> Outcome:
    files = launch_files(targets.code)
    findings = []
    for path in files:
        text = read_text(path)
        for line, logical in logical_lines(text or ""):
            for match in ENDPOINT.finditer(logical):
                host = match.group(1) or match.group(2)
                if public(host):
                    findings.append(Finding(f"rendezvous on {host}", path, line))
    return Outcome(f"{len(files)} launch/config file(s) read", findings)
