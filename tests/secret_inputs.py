"""The secret-bearing inputs of the collection's roles, listed once for every test that needs them
(tests/static/test_no_log.py; a canary test can give each of them a canary value).

Each entry: variable name -> the attributes that hold the secret inside it (of each element, for a
list of dicts), or None when the whole value is (or may carry) a secret.
"""

# What an operator gives (inventory, vault).
SECRET_INPUTS = {
    "xinference_admin_password": None,
    "xinference_registry_password": None,
    "xinference_cluster_auth_key": None,
    # Credentials in the URL (https://user:password@index/simple).
    "xinference_pip_index_url": None,
    # Tokens among the container's variables (HF_TOKEN).
    "xinference_env": None,
    # A model's envs (HF_TOKEN); the rest of a declaration is not secret.
    "xinference_models": ("envs",),
}

# What the roles generate or read back: keys and the results that carry them. The static test
# derives the facts and registered results that carry a secret by itself; these are the ones it
# cannot see (a module that returns a key, a file that holds one) and must be treated as secret.
SECRET_SOURCES = {
    # xinference_auth with return_api_key: the API key (its msg and actions carry none).
    "__xinference_auth": ("api_key", "invocation"),
    # slurp of the legacy auth file (its JWT secret and API key) and of the cluster key file.
    "__xinference_legacy_current": ("content",),
    "__xinference_cluster_key_file": ("content",),
    "__xinference_cluster_key_remote": ("content",),
}

# Facts the roles set from those (found by the static test's propagation; listed so that it
# cannot silently stop finding them).
SECRET_FACTS = ("xinference_api_key", "__xinference_cluster_key", "__xinference_legacy_key",
                "__xinference_legacy_secret")
