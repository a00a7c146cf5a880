"""The project's private PKI: certificate profiles and issuing (profiles), the PKI kept next to the spec (store),
certificates, keys and CSRs explained in plain words (inspect), and what the PKI hands to the renderers
(credentials)."""
