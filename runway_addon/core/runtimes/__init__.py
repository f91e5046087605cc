"""Where a model runs: a local process, Docker (CPU or NVIDIA GPU), or remote.
Every runtime hands back a ModelSession; nothing above cares which."""
