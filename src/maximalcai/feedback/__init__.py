"""Constitutional feedback: critique and revision (SL-CAI), safety labels, AI preference labels (RL-CAI)."""
