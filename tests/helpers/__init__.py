"""What tests share that is not a fixture: commands to run, snapshots to compare, copies to break."""
