"""Standalone generation pipeline: VAE, text encoder, reference images, video output."""
