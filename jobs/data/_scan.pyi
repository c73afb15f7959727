# The compiled byte scans (jobs/data/_scan.c), built by scripts/build-ext.sh.
def scan(data: bytes, /) -> tuple[int, int, int]: ...
def fold(text: str, /) -> bytes: ...
def prompt_key(text: str, /) -> int: ...
def plain(
    line: bytes,
    names: tuple[str, ...],
    kinds: bytes,
    prompt: int,
    chosen: int,
    rejected: int,
    seed: int,
    fraction: float,
    /,
) -> tuple[int, int | None, int, bool] | None: ...
