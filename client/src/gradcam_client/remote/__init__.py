"""Talking to a Grad-CAM model on Triton: the server client, the tensor contract, the wire formats
and model references."""
