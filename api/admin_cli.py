"""First-time setup from a shell: create an admin, promote a user, set or show the app config.

    python -m api.admin_cli create-admin --email admin@example.com   (password from ADMIN_PASSWORD
                                                                       or prompted)
    python -m api.admin_cli promote --email someone@example.com [--revoke]
    python -m api.admin_cli set-config discogs_consumer_key KEY      (value "-" reads stdin)
    python -m api.admin_cli show-config                              (secrets masked)

Connects to PostgreSQL with the POSTGRES_* variables; secrets are encrypted with ENCRYPTION_KEYS.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys

from api.models import RegisterRequest
from api.queries import user_queries
from api.services.auth import hash_password
from api.settings import ApiSettings
from common.clients import create_postgres_pool
from common.crypto import SecretBox


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m api.admin_cli", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create-admin", help="create an admin account (or promote it if it exists)")
    create.add_argument("--email", required=True)
    promote = sub.add_parser("promote", help="grant (or --revoke) the admin role")
    promote.add_argument("--email", required=True)
    promote.add_argument("--revoke", action="store_true")
    setc = sub.add_parser("set-config", help="set one app config value")
    setc.add_argument("key", choices=user_queries.CONFIG_KEYS)
    setc.add_argument("value", help='the value, or "-" to read it from stdin')
    sub.add_parser("show-config", help="print the app config (secrets masked)")
    return parser


async def run(args: argparse.Namespace, settings: ApiSettings) -> int:
    pool = await create_postgres_pool(settings, min_size=1, max_size=2, attempts=settings.connect_attempts)
    box = SecretBox(settings.encryption_key_list)
    try:
        async with pool.connection() as conn:
            if args.command == "create-admin":
                password = os.environ.get("ADMIN_PASSWORD") or getpass.getpass("Password: ")
                try:
                    req = RegisterRequest(email=args.email, password=password)
                except ValueError as exc:
                    print(f"invalid email or password: {exc}", file=sys.stderr)
                    return 2
                existing = await user_queries.get_user_by_email(conn, req.email)
                if existing is not None:
                    await user_queries.set_admin(conn, req.email, True)
                    print(f"{req.email} already exists; granted the admin role")
                else:
                    user = await user_queries.create_user(
                        conn, req.email, hash_password(req.password), is_admin=True
                    )
                    print(f"created admin {user.email} ({user.id})")
            elif args.command == "promote":
                if not await user_queries.set_admin(conn, args.email, not args.revoke):
                    print(f"no user with email {args.email}", file=sys.stderr)
                    return 1
                print(f"{args.email}: admin={'no' if args.revoke else 'yes'}")
            elif args.command == "set-config":
                value = sys.stdin.readline().rstrip("\n") if args.value == "-" else args.value
                if not value or len(value) > 1024:
                    print("the value must be 1..1024 characters", file=sys.stderr)
                    return 2
                await user_queries.set_app_config(conn, box, args.key, value)
                print(f"{args.key} set")
            else:
                rows = await user_queries.list_app_config(conn, box)
                for key in user_queries.CONFIG_KEYS:
                    row = rows.get(key)
                    if row is None:
                        shown = "(not set)"
                    elif row.is_secret:
                        shown = user_queries.mask_secret(row.value)
                    else:
                        shown = row.value
                    print(f"{key} = {shown}")
    finally:
        await pool.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return asyncio.run(run(args, ApiSettings()))


if __name__ == "__main__":
    raise SystemExit(main())
