#!/usr/bin/env bash
# Main job of the quick start: a held-out toy-world scene generated from its multi-view references
# with the bundled tiny model through `mvs2v generate`, then scored against the ground truth (no
# downloads). Writes demo_out/video.mp4, strip.png, metrics.json. Extra arguments go to `mvs2v demo`.
source "$(dirname "$0")/env.sh"
cd "$ROOT"
exec mvs2v demo "$@"
