"""SAM2 ML backend for Label Studio: interactive clicks answered from cached image embeddings."""
