"""The corpus model's held-out figures as the tables docs/classification.md quotes.

.venv/bin/python -m cloud.classify.report
"""

from collections import Counter

from cloud.classify import corpus, model, service
from cloud.classify.taxonomy import TAXONOMY


def main() -> None:
    split = corpus.split(corpus.load())
    trained = service.corpus_model()
    f = trained.stored.figures
    print(f"model: {trained.stored.params}")
    print(f"training {f['n_training']} texts, held out {f['n_held_out']}\n")
    print("| held out | macro-F1 | accuracy | majority baseline macro-F1 | majority baseline accuracy |")
    print("|---|---:|---:|---:|---:|")
    for level in ("subcategory", "category"):
        print(
            f"| {level} | {f[level + '_macro_f1']:.3f} | {f[level + '_accuracy']:.3f} "
            f"| {f['baseline_' + level + '_macro_f1']:.3f} | {f['baseline_' + level + '_accuracy']:.3f} |"
        )
    print("\n| language | texts | subcategory macro-F1 | subcategory accuracy | category accuracy |")
    print("|---|---:|---:|---:|---:|")
    for lang, row in f["by_language"].items():
        print(
            f"| {lang} | {row['count']} | {row['subcategory_macro_f1']:.3f} | {row['subcategory_accuracy']:.3f} "
            f"| {row['category_accuracy']:.3f} |"
        )
    print("\n| subcategory | precision | recall | F1 | held-out texts |")
    print("|---|---:|---:|---:|---:|")
    for cat, subs in TAXONOMY.items():
        for sub in subs:
            row = f["per_subcategory"][sub]
            print(
                f"| {cat}/{sub} | {row['precision']:.2f} | {row['recall']:.2f} | {row['f1']:.2f} | {row['support']} |"
            )
    predictions = model.predict(trained.pipeline, [e.text for e in split.held_out])
    confusions = Counter(
        (e.subcategory, p.subcategory)
        for e, p in zip(split.held_out, predictions, strict=True)
        if e.subcategory != p.subcategory
    )
    print("\n| true | predicted | held-out texts |")
    print("|---|---|---:|")
    for (true, guess), n in confusions.most_common(12):
        print(f"| {true} | {guess} | {n} |")
    print(
        "\n| confidence at least | share of held-out texts (coverage) "
        "| subcategory accuracy of those | category accuracy of those |"
    )
    print("|---:|---:|---:|---:|")
    for row in f["coverage"]:
        print(
            f"| {row['threshold']:.2f} | {row['coverage']:.2f} | {row['subcategory_accuracy']:.2f} "
            f"| {row['category_accuracy']:.2f} |"
        )


if __name__ == "__main__":
    main()
