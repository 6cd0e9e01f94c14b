"""Demo data: true persons rendered into every source the pipeline ingests, plus the ground truth.

    from crm_knowledge.demo import generate, generate_increment
    summary = generate(2000, seed=42)          # files + orders database + ground truth
    generate_increment(date(2026, 11, 21), 42)  # one more day on top

CLI: `python -m crm_knowledge.demo --size N --seed S [--increment-day YYYY-MM-DD]`.
"""

from crm_knowledge.demo.generate import DemoSummary, generate, generate_increment, main

__all__ = ["DemoSummary", "generate", "generate_increment", "main"]
