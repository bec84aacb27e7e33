"""pglab's Hydra sweeper plugins (Hydra finds plugins only under the ``hydra_plugins`` package)."""
