"""The Mosquitto side: the broker's files rendered from the spec (render), trust from elsewhere (trust: a CA file,
a broker certificate, a broker gen does not run), and the real mosquitto run with them (runner)."""
