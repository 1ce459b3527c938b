"""`python -m x3_shopify_dagster.sandboxes.x3 --port 8702 --folder SEED`: run the X3 sandbox in the foreground."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from x3_shopify_dagster.sandboxes.x3.config import X3SandboxConfig
from x3_shopify_dagster.sandboxes.x3.server import X3Sandbox


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m x3_shopify_dagster.sandboxes.x3",
                                     description="Local Sage X3 (Syracuse) sandbox.")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8702, help="port, 0 for an ephemeral one (default 8702)")
    parser.add_argument("--folder", default="SEED", help="main folder / Syracuse endpoint (default SEED)")
    parser.add_argument("--extra-folder", action="append", default=[], help="another folder (repeatable)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every api1/SOAP call")
    parser.add_argument("--pool-size", type=int, default=4)
    parser.add_argument("--pool-wait", type=float, default=5.0, help="seconds a SOAP call may queue")
    return parser.parse_args(argv)


def describe(sandbox: X3Sandbox) -> str:
    user, password = sandbox.basic_credentials
    client_id, client_secret = sandbox.oauth_client
    lines = [
        f"X3 sandbox listening on {sandbox.base_url}",
        f"  folders (endpoint = SOAP pool alias): {', '.join(sandbox.folders)}",
        f"  api1:   {sandbox.api1_url}/BPCUSTOMER?representation=BPCUSTOMER.$query",
        f"  SOAP:   {sandbox.soap_url}",
        f"  WSDL:   {sandbox.wsdl_url}",
        f"  token:  {sandbox.token_url}",
        # Sandbox-only credentials: printing them is the point of this command.
        f"  Basic:  user={user} password={password}",
        f"  OAuth2: client_id={client_id} client_secret={client_secret}",
        f"  pool:   size {sandbox.config.pool_size}, wait {sandbox.config.pool_wait_s:g} s, "
        f"latency {sandbox.config.latency_s:g} s",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = X3SandboxConfig(folder=args.folder, extra_folders=tuple(args.extra_folder), seed=args.seed,
                             latency_s=args.latency, pool_size=args.pool_size, pool_wait_s=args.pool_wait)
    sandbox = X3Sandbox(config).start(host=args.host, port=args.port)
    if not sandbox.is_loopback:
        print("warning: plain http on a non-loopback address; keep the sandbox off real networks",
              file=sys.stderr)
    print(describe(sandbox), flush=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
