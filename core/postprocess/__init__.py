"""Post-processing stages (clip -> clip) and chains of them."""
