"""The fleet's WebSocket approval key behind the shell's ``ApprovalKeyProvider`` seam (WS-APPROVAL-KEY).

The key is cached and refreshed like the REST token (token_manager.py): one issuance per fleet,
refreshed inside the window by one process, replaced after the broker rejects it (OPSP0011,
POL-AUTH-FAILED ``ws_codes``) — and a key another process already replaced satisfies the request
without a second issuance.
"""

from __future__ import annotations

from stockmon.reference.token_manager import SharedCredential
from stockmon.reference.token_state import CachedCredential


class SharedApprovalKeyProvider:
    """:class:`~stockmon.reference.seams.ApprovalKeyProvider` backed by a shared credential."""

    def __init__(self, manager: SharedCredential) -> None:
        self.manager = manager
        self._last: CachedCredential | None = None

    def __repr__(self) -> str:
        return f"SharedApprovalKeyProvider(store={self.manager.store.backend!r})"

    async def approval_key(self, *, force_new: bool = False) -> str:
        """The current key; with ``force_new`` a different one than the key last handed out."""
        if force_new and self._last is not None:
            cred = await self.manager.invalidate(self._last)
        else:
            cred = await self.manager.get()
        self._last = cred
        return cred.value.reveal()


__all__ = ["SharedApprovalKeyProvider"]
