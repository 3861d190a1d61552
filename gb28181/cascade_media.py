"""(skeleton: being written)"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .cascade import Cascade
    from .upstream import UpstreamLink


class UpstreamStreams:
    def __init__(self, cascade: Cascade, link: UpstreamLink) -> None:
        self.cascade = cascade
        self.link = link

    def close(self) -> None:
        pass
