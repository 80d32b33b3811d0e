from genlab_flow.flow import RealNVP

__all__ = ["RealNVP"]
