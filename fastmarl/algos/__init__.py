"""Learning algorithms, one family per file (ppo.py: IPPO and MAPPO)."""
