"""Where this process stands in a torchrun job: rank, world size, local rank (one of one when
not launched by torchrun). Shared by the trainer and the labelling run."""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "DistInfo":
        def geti(key: str, default: int) -> int:
            try:
                return int(os.environ.get(key, default))
            except ValueError:
                raise ValueError(f"environment variable {key}={os.environ[key]!r} is not an "
                                 "integer") from None
        d = cls(geti("RANK", 0), geti("WORLD_SIZE", 1), geti("LOCAL_RANK", 0))
        if d.world < 1 or not 0 <= d.rank < d.world:
            raise ValueError(f"bad RANK={d.rank} / WORLD_SIZE={d.world}")
        return d

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0
