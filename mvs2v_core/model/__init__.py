"""The Wan-compatible DiT, its configs and checkpoint loading."""
