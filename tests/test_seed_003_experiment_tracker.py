"""The seed experiment tracker's snippets (seed 003), changed only in their import lines, run
on `pytest_perfguard.experiment_tracker` and store into the history database.

The snippets use names their document leaves to the reader (`exp1_id`, `objective`,
`market_data`, the user's own `TPEOptimizer`); a preamble and a stand-in optimizer module
in the scratch directory provide them. The snippets' text is as in the seed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from pytest_perfguard import History

# "Basic Usage", verbatim but for the import (was: from src.tracking.experiment_tracker ...).
BASIC_USAGE = """\
from pytest_perfguard.experiment_tracker import ExperimentTracker

# Initialize tracker
tracker = ExperimentTracker(db_path='experiments.db')

# Create experiment
exp_id = tracker.create_experiment(
    name="Momentum Optimization",
    template="Momentum",
    mode="tpe_runtime_ttpt",
    config={
        'n_trials': 50,
        'checkpoint_interval': 10
    }
)

# Log trial
trial_id = tracker.log_trial(
    experiment_id=exp_id,
    trial_number=1,
    params={'lookback': 20, 'momentum_threshold': 0.05},
    performance={'sharpe': 1.23, 'returns': 0.15}
)

# Log TTPT result
ttpt_id = tracker.log_ttpt_result(
    trial_id=trial_id,
    passed=True,
    num_violations=0,
    metrics={'correlation': 0.98, 'performance_change': 0.02}
)
"""

# Names "Query and Analysis" uses without defining them: a second experiment to compare.
QUERY_PREAMBLE = """\
exp1_id = exp_id
exp2_id = tracker.create_experiment(name="Mean Reversion", template="MeanReversion", mode="grid")
for n, (sharpe, passed) in enumerate([(0.4, False), (0.9, False), (0.7, True)], start=1):
    t = tracker.log_trial(experiment_id=exp2_id, trial_number=n, params={'window': n * 5},
                          performance={'sharpe': sharpe, 'returns': sharpe / 10})
    tracker.log_ttpt_result(trial_id=t, passed=passed, num_violations=0 if passed else 3)
"""

# "Query and Analysis", verbatim.
QUERY_AND_ANALYSIS = """\
# Get experiment
experiment = tracker.get_experiment(exp_id)

# Get all trials
trials = tracker.get_trials(exp_id)

# Filter experiments by violation rate
low_violation_exps = tracker.filter_experiments(max_violation_rate=0.2)

# Compare experiments
comparison = tracker.compare_experiments([exp1_id, exp2_id])

# Export to DataFrame for analysis
try:
    df = tracker.export_to_dataframe(exp_id)
except Exception as exc:  # pandas is optional
    df = str(exc)
"""

REPORT = """\
import json
print(json.dumps({
    "experiment": experiment, "trials": trials,
    "low_violation": [e["name"] for e in low_violation_exps],
    "comparison": comparison, "df": df if isinstance(df, str) else len(df),
}, default=str))
"""

# The user's optimizer (not part of the tracker): a stand-in returning what the seed's did.
OPTIMIZER = """\
class TPEOptimizer:
    def optimize_with_runtime_ttpt(self, objective_fn, strategy_fn, data, n_trials,
                                   param_space, checkpoint_interval):
        trials = []
        for number in range(1, n_trials + 1):
            params = {name: low + (high - low) * number / n_trials
                      for name, (low, high) in param_space.items()}
            trials.append({"number": number, "params": params,
                           "performance": {"sharpe": objective_fn(params)}})
        best = max(t["performance"]["sharpe"] for t in trials)
        return {"trials": trials, "best_value": best,
                "ttpt_summary": {"checks": n_trials // checkpoint_interval, "violations": 0}}
"""

TPE_PREAMBLE = """\
def objective(params):
    return 2.0 - (params['lookback'] - 30) ** 2 / 400

def strategy(params, data):
    return data

market_data = [1.0, 1.01, 0.99]
param_space = {'lookback': (10, 50)}
"""

# "Integration with TPE Optimizer", verbatim but for the tracker's import.
TPE_INTEGRATION = """\
from src.learning.optimizer import TPEOptimizer
from pytest_perfguard.experiment_tracker import ExperimentTracker

# Initialize
optimizer = TPEOptimizer()
tracker = ExperimentTracker()

# Create experiment
exp_id = tracker.create_experiment(
    name="TPE Optimization",
    template="Momentum",
    mode="tpe_runtime_ttpt"
)

# Run optimization
result = optimizer.optimize_with_runtime_ttpt(
    objective_fn=objective,
    strategy_fn=strategy,
    data=market_data,
    n_trials=50,
    param_space=param_space,
    checkpoint_interval=10
)

# Log trials (can be automated in future)
for trial in result['trials']:
    tracker.log_trial(
        experiment_id=exp_id,
        trial_number=trial['number'],
        params=trial['params'],
        performance=trial['performance']
    )

# Store summary
tracker.log_experiment_summary(
    experiment_id=exp_id,
    summary={
        'ttpt_summary': result['ttpt_summary'],
        'best_sharpe': result['best_value'],
        'n_trials_completed': 50
    }
)
"""


def run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    (cwd / "snippet.py").write_text(code, encoding="utf-8")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join([str(cwd), *sys.path])}
    return subprocess.run(
        [sys.executable, "snippet.py"],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_basic_usage_and_queries(tmp_path: Path) -> None:
    done = run(BASIC_USAGE + QUERY_PREAMBLE + QUERY_AND_ANALYSIS + REPORT, tmp_path)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["experiment"]["name"] == "Momentum Optimization"
    assert out["experiment"]["config"] == {"n_trials": 50, "checkpoint_interval": 10}
    [trial] = out["trials"]
    assert trial["performance"] == {"sharpe": 1.23, "returns": 0.15}
    assert trial["ttpt_result"] == {
        "passed": True, "num_violations": 0,
        "metrics": {"correlation": 0.98, "performance_change": 0.02},
    }  # fmt: skip
    # Mean Reversion fails 2 of 3 validations: above the 0.2 violation rate.
    assert out["low_violation"] == ["Momentum Optimization"]
    momentum, reversion = out["comparison"]
    assert momentum["metrics"]["sharpe"]["best"] == 1.23
    assert reversion["metrics"]["sharpe"]["best"] == 0.9
    assert reversion["metrics"]["sharpe"]["best_trial"] == 2
    assert reversion["failure_rate"] == 2 / 3
    assert out["df"] == 1 or "pip install pandas" in out["df"]
    # Stored in the history database, where the CLI finds it too.
    with History(tmp_path / "experiments.db") as history:
        assert [r.name for r in history.experiments()] == [
            "Mean Reversion",
            "Momentum Optimization",
        ]


def test_tpe_integration(tmp_path: Path) -> None:
    package = tmp_path / "src" / "learning"
    package.mkdir(parents=True)
    (tmp_path / "src" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "optimizer.py").write_text(textwrap.dedent(OPTIMIZER))
    done = run(TPE_PREAMBLE + TPE_INTEGRATION, tmp_path)
    assert done.returncode == 0, done.stderr
    with History(tmp_path / "experiments.db") as history:
        exp = history.get_experiment("TPE Optimization")
        assert exp.mode == "tpe_runtime_ttpt" and len(exp.trials()) == 50
        assert exp.summary is not None and exp.summary["n_trials_completed"] == 50
        best = exp.best("sharpe")
        assert best is not None and best.params == {"lookback": 30.0}
        assert exp.improvement("sharpe").best == exp.summary["best_sharpe"] == 2.0


def test_the_json_backend_is_refused_with_the_way_forward(tmp_path: Path) -> None:
    code = (
        "from pytest_perfguard.experiment_tracker import ExperimentTracker\n"
        "ExperimentTracker(db_path='experiments.json')\n"
    )
    done = run(code, tmp_path)
    assert done.returncode == 1
    assert "perfguard experiments export" in done.stderr.splitlines()[-1]
