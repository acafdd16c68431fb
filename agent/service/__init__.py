"""The docking-station service: daemon, control socket, sd_notify."""
