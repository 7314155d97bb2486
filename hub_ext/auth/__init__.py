"""Login: claim -> group rules for OpenID Connect (oauthenticator does the OAuth).

``rules`` (the mapping, no dependencies), ``oidc`` (the authenticator, imports
oauthenticator), ``tokens`` (the user's access token for catalogue backends).
"""
