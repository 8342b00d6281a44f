"""canary: progressive delivery for Helm releases on an Istio mesh."""

__version__ = "0.1.0"
