"""Side by side: (1) per-unit Theorem 4.2 on 1000 random units, one HVP for all units
(coupled=False) vs one HVP per unit; (2) the VGG probe with memoised HVPs vs without."""
import time
import torch
from bnlib import models, theory
from bnlib.chapters import theory as ch

torch.set_num_threads(1)

def timed(f, n=3):
    f(); t = time.perf_counter()
    for _ in range(n): r = f()
    return (time.perf_counter() - t) / n, r

gen = torch.Generator().manual_seed(0)
cap = ch.random_capture(64, 300, gen, eps=1e-30)
a = (cap.y, cap.g, cap.grad_y, cap.gamma)
hv = dict(hess_hat=cap.hess_hat, hess=cap.hess, eps=cap.eps, form="exact")
t1, s1 = timed(lambda: theory.thm_4_2(*a, **hv, coupled=False), 3)
t2, s2 = timed(lambda: theory.thm_4_2(*a, **hv, coupled=True), 1)
print(f"thm_4_2 per unit, 300 units m=64: one HVP {t1*1e3:.1f} ms, per-unit loop {t2*1e3:.1f} ms, "
      f"ratio {t2/t1:.1f}x, max |diff| {float((s1.lhs-s2.lhs).abs().max()):.1e}")

torch.manual_seed(0)
model = models.vgg(11, width=0.25, norm="bn")
X, y = torch.randn(128, 3, 32, 32), torch.randint(0, 10, (128,))
layers = ch.probe_layers(model, 4)
memo = ch._memo
def probe():
    class C: pass
    c = C(); c.model, c.X, c.y = model, X, y
    return ch.theory_probe(layers)(c)
tm, _ = timed(probe, 2)
ch._memo = lambda f: f
tn, _ = timed(probe, 2)
ch._memo = memo
print(f"VGG-11 (width 1/4, batch 128) probe of both layers: memoised {tm:.2f} s, "
      f"without memo {tn:.2f} s, ratio {tn/tm:.2f}x")
