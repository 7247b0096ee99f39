"""Authenticated encryption for secrets at rest (Discogs tokens, the consumer secret).

Fernet (AES-128-CBC + HMAC-SHA256) under a key from the environment. Ciphertext carries a key-id
prefix (`<kid>:<token>`) so keys can be rotated: new values use the first key, old values decrypt
with whichever configured key has their id.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken


class SecretBoxError(ValueError):
    """Ciphertext that no configured key can open (wrong key, tampered, or not ciphertext)."""


def derive_key(secret: str) -> bytes:
    """A Fernet key from any passphrase (so the env var need not be a 32-byte base64 key)."""
    return base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())


class SecretBox:
    def __init__(self, secrets: list[str]) -> None:
        if not secrets or not all(secrets):
            raise ValueError("at least one non-empty encryption key is required")
        self._keys = [(hashlib.sha256(s.encode()).hexdigest()[:8], Fernet(derive_key(s))) for s in secrets]

    def encrypt(self, plaintext: str) -> str:
        kid, fernet = self._keys[0]
        return f"{kid}:{fernet.encrypt(plaintext.encode()).decode()}"

    def decrypt(self, ciphertext: str) -> str:
        kid, sep, token = ciphertext.partition(":")
        if not sep:
            raise SecretBoxError("value is not encrypted ciphertext")
        for key_id, fernet in self._keys:
            if key_id == kid:
                try:
                    return fernet.decrypt(token.encode()).decode()
                except InvalidToken as exc:
                    raise SecretBoxError("ciphertext failed authentication") from exc
        raise SecretBoxError(f"no configured key with id {kid}")
