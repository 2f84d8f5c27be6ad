"""Default Haravan <-> MISA AMIS flows and the tables an integrator fills in."""
