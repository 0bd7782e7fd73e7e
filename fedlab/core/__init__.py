"""The round loop (``loop``), client sampling (``sampling``), per-client state
(``client_state``) and the types the loop and the engines pass each other (``types``)."""
