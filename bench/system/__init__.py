"""The system under test, from the harness's side: launching and supervising placements,
processes and pinning, resource sampling, faults and the fault proxy, the floors, and asking a
running shop what only it knows."""
