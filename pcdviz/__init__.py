"""pcdviz: self-supervised point-cloud transformers and an explorer for their attention maps."""

__version__ = "0.1.0"
