"""Shared helpers with no project imports: the floor every other package (trident, rl, pretrain, rewards, sandbox) may import."""
