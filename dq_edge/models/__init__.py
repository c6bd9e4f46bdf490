"""Pipeline stage 1+2 reference models in torch."""
