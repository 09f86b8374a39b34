"""Video generators: the embedded no-weights `kenburns` preview and the AI models."""
