# %% [markdown]
# # A GPT, end to end, in one minute of CPU
#
# Bytes in, next-byte probabilities out: we build a tiny GPT from `llm_reference`,
# look at the shapes, check that the untrained loss is ln V, then train it for a few
# hundred steps on one paragraph until it can continue the paragraph by itself.

# %%
import json
import math

import matplotlib.pyplot as plt
import torch

from llm_reference.model import GPT, ModelConfig

BOOK = {"timeout": 600, "seed": 0,
        "settings": {"steps": 300, "lr": 3e-3, "batch": 16, "context": 64}}
S = BOOK["settings"]
torch.manual_seed(BOOK["seed"])
torch.set_num_threads(1)

TEXT = ("A language model reads a sequence of tokens and predicts the next one. "
        "Trained on enough text, predicting the next token well requires knowing "
        "spelling, grammar, facts and a little reasoning. That is the whole trick: "
        "one simple objective, a lot of data, and a network that can use context.")
data = torch.tensor(list(TEXT.encode("utf-8")))  # ids are bytes: V = 256

# %% tags=["shapes"]
config = ModelConfig(vocab_size=256, context_length=S["context"], n_layer=2,
                     n_head=4, d_model=64)
model = GPT(config)
idx = data[:16].unsqueeze(0)                                  # (B, T) = (1, 16)
logits, _ = model(idx)                  # (1, 16, 256): a score per next token
_, loss = model(idx, targets=data[1:17].unsqueeze(0))  # with targets: the loss alone
print(f"parameters       {model.num_parameters():,}")
print(f"input ids        {tuple(idx.shape)}  (batch, time)")
print(f"logits           {tuple(logits.shape)}  (batch, time, vocabulary)")
print(f"loss at init     {loss.item():.3f}   ln V = ln 256 = {math.log(256):.3f}")


# %%
def batch(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of the text: inputs and the same windows shifted by one."""
    T = S["context"]
    starts = torch.randint(0, len(data) - T - 1, (S["batch"],), generator=generator)
    x = torch.stack([data[s:s + T] for s in starts])          # (B, T)
    y = torch.stack([data[s + 1:s + T + 1] for s in starts])  # (B, T)
    return x, y


optimizer = torch.optim.AdamW(model.parameters(), lr=S["lr"], weight_decay=0.0)
generator = torch.Generator().manual_seed(BOOK["seed"])
losses = []
for _ in range(S["steps"]):
    x, y = batch(generator)
    _, loss = model(x, targets=y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    losses.append(loss.item())

# %% tags=["checkpoint"]
print(f"loss after {S['steps']} steps: {losses[-1]:.3f} "
      f"(perplexity {math.exp(losses[-1]):.2f})")
prompt = list(b"A language model")
model.eval()
with torch.no_grad():
    ids = torch.tensor([prompt])
    for _ in range(60):  # greedy: always the most likely next byte
        logits, _ = model(ids[:, -S["context"]:])
        ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
print(bytes(ids[0].tolist()).decode("utf-8", errors="replace"))

# %%
json.dump({"losses": losses, "ln_v": math.log(256),
           "parameters": model.num_parameters()}, open("mental_model.json", "w"))
fig, ax = plt.subplots(figsize=(6, 2.6))
ax.plot(losses, color="#0969da", linewidth=1.2)
ax.axhline(math.log(256), color="#57606a", linestyle="--", linewidth=0.8)
ax.text(S["steps"] * 0.6, math.log(256) + 0.1, "ln 256: uniform guess", fontsize=8)
ax.set_xlabel("training step")
ax.set_ylabel("cross-entropy (nats)")
ax.set_ylim(0, 6.2)
ax.spines[["top", "right"]].set_visible(False)
fig.tight_layout()
fig.savefig("loss.svg")
