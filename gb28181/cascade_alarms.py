"""(skeleton: being written)"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .cascade import Cascade


class AlarmForwarding:
    def __init__(self, cascade: Cascade) -> None:
        self.cascade = cascade

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass
