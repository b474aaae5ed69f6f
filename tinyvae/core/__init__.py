"""The reading path: the math of tinyvae, from the loss to the weight update. It only computes.

Read in this order; each module imports only the ones before it:
    xp.py             the array seam: namespace_of, device_of
    layers.py         dense layer, activations, reshape, log-softmax: *_forward / *_backward pairs
    distributions.py  Bernoulli and Gaussian NLL, the reparameterized sample, the KL
    nets.py           layer specs and the two passes over a network
    vae.py            VAEConfig, init_params, neg_elbo_forward / _backward, loss_and_grads
    optim.py          SGD and Adam
Side reads, same rules: conv, batch_norm, ae, m2, sparse, estimators, gan, classifier. Nothing here checks its
arguments (tinyvae/checks.py and api.py do) or touches a file. docs/package.md
"""
