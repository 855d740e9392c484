"""The numeric (NumPy) model of the seed's setting: policy, overseer, estimators, search, dynamics."""
