#!/usr/bin/env bash
# Main job of the quick start: `mvs2v generate` end to end on tiny RANDOM models made on the spot
# (no downloads). Writes demo_out/video.mp4. Extra arguments go to `mvs2v demo`.
source "$(dirname "$0")/env.sh"
cd "$ROOT"
exec mvs2v demo "$@"
