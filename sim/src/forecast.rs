//! `shardcast-sim forecast`: every model walked forward over every partition of a trace, the
//! scores pooled over partitions (docs/forecasting.md).

use shardcast_predictor::forecast::evaluate::{
    evaluate, evaluate_global, reference_for, EvalConfig, Tally,
};
use shardcast_predictor::forecast::models::{LastValue, Model, Period, SeasonalNaive, Spar};
use shardcast_predictor::forecast::{Gbt, GlobalGbt, Seasons, Series};
use shardcast_predictor::trace::TraceRow;
use std::time::Instant;

/// Settings of a forecast evaluation, in the trace's time.
#[derive(Debug, Clone)]
pub struct ForecastRun {
    /// The peak of this much time ahead is forecast.
    pub horizon_ms: u64,
    /// Length of a day (compressed in demos and tests).
    pub day_ms: u64,
    /// Interval of the series; `None`: the trace's own (the smallest gap between rows).
    pub step_ms: Option<u64>,
    /// Time between forecast origins; `None`: the horizon.
    pub every_ms: Option<u64>,
    pub quantile: f64,
}

/// One row of the result table.
#[derive(Debug, Clone)]
pub struct Row {
    pub model: String,
    pub tally: Tally,
}

/// The result: the rows, the reference of MASE, and what was evaluated.
#[derive(Debug, Clone)]
pub struct Report {
    pub rows: Vec<Row>,
    pub reference: String,
    pub partitions: usize,
    pub step_ms: u64,
    pub horizon_steps: usize,
}

/// The models evaluated, in the table's order.
pub fn models() -> Vec<Box<dyn Model>> {
    vec![
        Box::new(LastValue),
        Box::new(SeasonalNaive(Period::Day)),
        Box::new(SeasonalNaive(Period::Week)),
        Box::new(Spar::new(Period::Day)),
        Box::new(Spar::new(Period::Week)),
        Box::new(Gbt::default()),
    ]
}

/// The smallest positive gap between the timestamps of `rows` (at least 1 ms).
pub fn trace_step_ms(rows: &[TraceRow]) -> u64 {
    let mut ts: Vec<u64> = rows.iter().map(|r| r.ts_ms).collect();
    ts.sort_unstable();
    ts.dedup();
    ts.windows(2).map(|w| w[1] - w[0]).min().unwrap_or(1).max(1)
}

/// Evaluates every model on every partition of `rows`.
pub fn run(rows: &[TraceRow], cfg: &ForecastRun) -> Result<Report, String> {
    if rows.is_empty() {
        return Err("the trace has no rows".into());
    }
    let step_ms = cfg.step_ms.unwrap_or_else(|| trace_step_ms(rows));
    let horizon = (cfg.horizon_ms / step_ms).max(1) as usize;
    let seasons = Seasons::new(step_ms, cfg.day_ms);
    let every = (cfg.every_ms.unwrap_or(cfg.horizon_ms) / step_ms).max(1) as usize;
    let eval = EvalConfig {
        seasons,
        horizon,
        every,
        retrain_every: (seasons.day_steps / every).max(1),
        quantile: cfg.quantile,
        warmup: seasons.day_steps * 4,
    };
    let series = Series::from_rows(rows, step_ms);
    let clock = Instant::now();
    let now_ns = || clock.elapsed().as_nanos() as u64;
    let mut rows_out: Vec<Row> = Vec::new();
    let mut reference = String::new();
    for s in &series {
        let mut ms = models();
        let e = evaluate(&s.values, &mut ms, &eval, &now_ns);
        reference = e.reference.clone();
        for score in e.scores {
            match rows_out.iter_mut().find(|r| r.model == score.model) {
                Some(r) => r.tally.merge(&score.tally),
                None => rows_out.push(Row { model: score.model, tally: score.tally }),
            }
        }
    }
    // One model for every partition, fit on all of them (cross-learning).
    let values: Vec<&[f64]> = series.iter().map(|s| s.values.as_slice()).collect();
    let tally = evaluate_global(&values, &mut GlobalGbt::default(), &eval, &now_ns);
    rows_out.push(Row { model: "gbt_global".into(), tally });
    if rows_out.iter().all(|r| r.tally.origins == 0) {
        let len = series.iter().map(|s| s.values.len()).max().unwrap_or(0);
        let need = eval.warmup.max(reference_for(len, &eval).0.steps(seasons)) + horizon;
        return Err(format!(
            "the trace is too short to evaluate: {len} steps of {step_ms} ms, and a forecast \
             needs {need} (4 days of history, then the horizon)"
        ));
    }
    Ok(Report {
        rows: rows_out,
        reference,
        partitions: series.len(),
        step_ms,
        horizon_steps: horizon,
    })
}

/// The report as a table (CSV-like columns, aligned).
pub fn table(r: &Report) -> String {
    let mut out = format!(
        "# {} partition(s), step {} ms, horizon {} steps, MASE against {}\n",
        r.partitions, r.step_ms, r.horizon_steps, r.reference
    );
    out.push_str("model,origins,mape_pct,mase,coverage_pct,fit_ms,forecast_us_per_origin\n");
    for row in &r.rows {
        let t = &row.tally;
        out.push_str(&format!(
            "{},{},{:.2},{:.3},{:.1},{:.1},{:.1}\n",
            row.model,
            t.origins,
            t.mape_pct(),
            t.mase(),
            t.coverage_pct(),
            t.fit_ns as f64 / 1e6,
            t.forecast_ns as f64 / 1e3 / t.origins.max(1) as f64,
        ));
    }
    out
}
