"""The `loopline` command: the embedded stack (up, status, down) and, as services land, their clients."""
