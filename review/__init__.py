"""Review by geometric agreement: brush and polygon IoU, kappa, and the reviewer queue."""
