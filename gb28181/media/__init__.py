"""Media sessions with devices."""
