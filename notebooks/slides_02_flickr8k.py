# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown] slideshow={"slide_type": "skip"}
# The slides of the Flickr8k captioning study, for the short talk: `make slides` runs this file on the stored results
# and exports one reveal.js deck (`slides/02_flickr8k.html`, code hidden). Every number is read from its results
# file (`lit_mc.report.Facts`), as in the captioning notebook, which holds the full story.

# %% slideshow={"slide_type": "skip"}
import os
import warnings
from pathlib import Path
from IPython.display import Image, Markdown, display
from lit_mc import report
warnings.filterwarnings("ignore")

os.chdir(os.environ.get("LIT_MC_REPO", Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()))
RESULTS, BENCH = report.results_root(), report.bench_root()
facts = report.Facts(RESULTS)
show = lambda text: display(Markdown(text))
show_fig = lambda fig, width=900: display(Image(data=report.figure_png(fig), width=width))
models = [m for m in ("show_and_tell", "show_attend_tell", "transformer")
          if (RESULTS / "flickr8k" / m / "test_metrics.json").is_file()]

# %% [markdown] slideshow={"slide_type": "slide"}
# # Image captioning with attention
# ## Does looking at the image at every word make better captions?
#
# - Flickr8k: photographs of people and animals, five human captions each, the official train / dev / test split
# - Show and Tell (no attention), Show, Attend and Tell (soft attention), a transformer decoder
# - Scored with BLEU, METEOR, ROUGE-L and CIDEr (pycocoevalcap) on the official test images

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Data

# %%
data = Path(os.environ.get("LIT_MC_FLICKR8K", "data/flickr8k"))
if (data / "Flickr8k_text").is_dir():
    table, fig = report.caption_data_overview(data)
    show_fig(fig, 860)
else:
    show(f"Flickr8k is not available here ({data}).")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Three decoders on one frozen encoder
#
# - One ImageNet CNN (EfficientNet-Lite0), frozen: a 7x7 grid of feature vectors per image, computed once
# - **Show and Tell** (Vinyals et al. 2015): the averaged grid starts an LSTM; the image is never seen again
# - **Show, Attend and Tell** (Xu et al. 2015): additive attention over the grid at every word
# - **Transformer**: causal self-attention plus cross-attention to the grid
# - All: teacher-forced cross-entropy, Adam, greedy and beam-search decoding; the checkpoint of best validation
#   CIDEr is tested

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Training: validation CIDEr and loss per epoch

# %%
show_fig(report.caption_curves_figure(RESULTS), 1000)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Test scores over seeds (x100), decoding chosen on validation

# %%
runs = report.caption_result_runs(RESULTS)
analysed = [n for n, r in runs.items() if (r[0] / "per_image.csv").is_file()]
if analysed:
    show(report.caption_seed_table(RESULTS))
    others = [n for n in analysed if n != "show_and_tell"]
else:
    show("No seeded run analysed yet.")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Paired comparisons on the same test images (x100, bootstrap intervals)

# %%
if analysed:
    if "show_and_tell" in analysed and others:
        show("Against Show and Tell:\n\n" + report.paired_comparison_markdown(others, "show_and_tell", RESULTS))
    scst = report.scst_comparison_markdown(RESULTS)
    if scst:
        show("Self-critical fine-tuning against its starting seed:\n\n" + scst)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## First round: one run per model, greedy and beam search (x100)

# %%
show(report.caption_metric_table(RESULTS))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Does attention help?

# %%
if {"show_and_tell", "show_attend_tell"} <= set(models):
    cider = {m: facts.get(f"flickr8k/{m}/test_metrics.json", "beam3", "cider", fmt="score") for m in models}
    bleu4 = {m: facts.get(f"flickr8k/{m}/test_metrics.json", "beam3", "bleu4", fmt="score") for m in models}
    gain = facts.derive("difference", cider["show_attend_tell"], cider["show_and_tell"], fmt="score_diff")
    lines = [f"- With a beam of three, soft attention scores CIDEr {cider['show_attend_tell']} against "
             f"{cider['show_and_tell']} without it ({gain}); BLEU-4 {bleu4['show_attend_tell']} against "
             f"{bleu4['show_and_tell']}"]
    if "transformer" in models:
        behind = facts.derive("difference", cider["transformer"], cider["show_attend_tell"], fmt="score_diff")
        lines.append(f"- The transformer reaches CIDEr {cider['transformer']} ({behind} against Show, Attend and "
                     "Tell): at this data size it does not win yet")
    lines.append("- First-round single runs, beam read off the test split: the seeded slide before is the comparison")
    show("\n".join(lines))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Where the model looks, word by word

# %%
pngs = sorted((RESULTS / "flickr8k" / "show_attend_tell" / "best").glob("row=*.png"))[:1]
for png in pngs:
    display(Image(filename=str(png), width=1000))
if not pngs:
    show("No attention examples stored.")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Measuring attention on a toy set with known boxes
#
# Two coloured shapes per image; the share of attention inside the box of the object being named, against uniform
# attention.

# %%
if (BENCH / "toy_attention.json").is_file():
    show(report.toy_attention_markdown(BENCH))
else:
    show("No toy attention results stored.")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## A pretrained language model as the decoder
#
# - ClipCap (Mokady et al. 2021): a mapping network turns the grid into prefix embeddings of a frozen SmolLM2-135M
#   (Hugging Face transformers), which writes the caption with its own tokenizer; only the mapping network trains

# %%
if "prefix_lm" in runs and (runs["prefix_lm"][0] / "per_image.csv").is_file():
    scratch = [m for m in report.CAPTIONERS if m in runs and (runs[m][0] / "per_image.csv").is_file()]
    show(report.training_cost_table([*scratch, "prefix_lm"], RESULTS))
    def ci(r):
        return f"{100 * r['mean']:+.1f} [{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}]"
    show("Prefix LM minus each, per-image CIDEr-D (x100, 95% paired bootstrap):\n\n" + report.markdown_table(
        ["against", "CIDEr-D difference"], [(m, ci(report.paired_difference("prefix_lm", m, "cider", RESULTS)))
                                            for m in scratch]))
else:
    show("Not trained on Flickr8k yet.")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## What is still open

# %%
seeded = [n for n, r in runs.items() if r[0].name.startswith("seed")]
open_items = [f"- {m}: three seeds" for m in ("show_and_tell", "show_attend_tell", "transformer") if m not in seeded]
open_items += [f"- {m}: self-critical fine-tuning" for m in ("show_and_tell", "show_attend_tell", "transformer")
               if f"{m}_scst" not in runs]
if "prefix_lm" not in runs:
    open_items.append("- The captioner on a pretrained language model (SmolLM2-135M, Hugging Face transformers)")
if "r7" not in report.recipe_rows(RESULTS):
    open_items.append("- The transformer's size row (a wider, deeper decoder) of the recipe search")
show("\n".join(open_items) if open_items else "Every run of the campaign is in.")

# %% slideshow={"slide_type": "skip"}
if os.environ.get("LIT_MC_FACTS"):
    facts.save(os.environ["LIT_MC_FACTS"])
