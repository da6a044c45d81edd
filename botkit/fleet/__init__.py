"""A fleet of bots coordinated over Redis: leases, heartbeats, one kill switch, shared rate budgets."""
