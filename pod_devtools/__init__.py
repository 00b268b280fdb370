"""Development tooling beside the product: synthetic landing zones and the benchmark.

Nothing in `pod_pipeline` imports from here, so changing it changes no fingerprint of the product.
"""
