//! `holt_winters()` and `holt_winters_with_fit()`: InfluxDB 1.x's forecast, ported
//! step for step so the answers match to the last bit — its reducer (the window values
//! on an interval grid, NaN for missing windows; starting guesses; a 2x2x2x2 grid of
//! starting parameters, each refined by its Nelder-Mead optimizer; the damped,
//! multiplicative-seasonal recurrences), with Go's `math.Pow` (`influxql::gomath`:
//! repeated squaring, not the C library's pow), which the recurrences call.
//!
//! Go's code mutates the parameter vectors it is handed (the objective constrains them
//! to [0, 1] and writes the seasonal ring buffer into them), and the optimizer's path
//! depends on that: the port keeps every such write.

/// Nelder-Mead as InfluxDB's `query/neldermead` (after Michael F. Hutt's).
struct Optimizer {
    max_iterations: usize,
    alpha: f64,
    beta: f64,
    gamma: f64,
}

impl Optimizer {
    fn new() -> Optimizer {
        Optimizer {
            max_iterations: 1000,
            alpha: 1.0,
            beta: 0.5,
            gamma: 2.0,
        }
    }

    // Index loops as the Go it mirrors, so the two read side by side.
    #[allow(clippy::needless_range_loop)]
    fn optimize(
        &self,
        objfunc: &mut dyn FnMut(&mut [f64]) -> f64,
        start: &[f64],
        epsilon: f64,
        scale: f64,
    ) -> (f64, Vec<f64>) {
        let n = start.len();
        let mut v = vec![vec![0.0; n]; n + 1];
        let mut f = vec![0.0; n + 1];
        let mut vr = vec![0.0; n];
        let mut ve = vec![0.0; n];
        let mut vc = vec![0.0; n];
        let mut vm = vec![0.0; n];
        let nf = n as f64;
        let pn = scale * (((n + 1) as f64).sqrt() - 1.0 + nf) / (nf * 2f64.sqrt());
        let qn = scale * (((n + 1) as f64).sqrt() - 1.0) / (nf * 2f64.sqrt());
        v[0].copy_from_slice(start);
        for i in 1..=n {
            for j in 0..n {
                v[i][j] = if i - 1 == j {
                    pn + start[j]
                } else {
                    qn + start[j]
                };
            }
        }
        for j in 0..=n {
            f[j] = objfunc(&mut v[j]);
        }
        for _ in 1..=self.max_iterations {
            let (mut vg, mut vs) = (0, 0);
            for i in 0..=n {
                if f[i] > f[vg] {
                    vg = i;
                }
                if f[i] < f[vs] {
                    vs = i;
                }
            }
            let mut vh = vs;
            for i in 0..=n {
                if f[i] > f[vh] && f[i] < f[vg] {
                    vh = i;
                }
            }
            for i in 0..n {
                let mut cent = 0.0;
                for (m, row) in v.iter().enumerate() {
                    if m != vg {
                        cent += row[i];
                    }
                }
                vm[i] = cent / nf;
            }
            for i in 0..n {
                vr[i] = vm[i] + self.alpha * (vm[i] - v[vg][i]);
            }
            let fr = objfunc(&mut vr);
            if fr < f[vh] && fr >= f[vs] {
                v[vg].copy_from_slice(&vr);
                f[vg] = fr;
            }
            if fr < f[vs] {
                for i in 0..n {
                    ve[i] = vm[i] + self.gamma * (vr[i] - vm[i]);
                }
                let fe = objfunc(&mut ve);
                if fe < fr {
                    v[vg].copy_from_slice(&ve);
                    f[vg] = fe;
                } else {
                    v[vg].copy_from_slice(&vr);
                    f[vg] = fr;
                }
            }
            if fr >= f[vh] {
                if fr < f[vg] && fr >= f[vh] {
                    for i in 0..n {
                        vc[i] = vm[i] + self.beta * (vr[i] - vm[i]);
                    }
                } else {
                    for i in 0..n {
                        vc[i] = vm[i] - self.beta * (vm[i] - v[vg][i]);
                    }
                }
                let fc = objfunc(&mut vc);
                if fc < f[vg] {
                    v[vg].copy_from_slice(&vc);
                    f[vg] = fc;
                } else {
                    for row in 0..=n {
                        if row != vs {
                            for i in 0..n {
                                v[row][i] = v[vs][i] + (v[row][i] - v[vs][i]) / 2.0;
                            }
                        }
                    }
                    f[vg] = objfunc(&mut v[vg]);
                    f[vh] = objfunc(&mut v[vh]);
                }
            }
            let fsum: f64 = f.iter().sum();
            let favg = fsum / (n + 1) as f64;
            let mut s = 0.0;
            for fi in &f {
                s += crate::influxql::gomath::pow(fi - favg, 2.0) / nf;
            }
            if s.sqrt() < epsilon {
                break;
            }
        }
        let mut vs = 0;
        for i in 0..=n {
            if f[i] < f[vs] {
                vs = i;
            }
        }
        let parameters = v[vs].clone();
        let min = objfunc(&mut v[vs]);
        (min, parameters)
    }
}

const HW_WEIGHT: f64 = 0.5;
const HW_EPSILON: f64 = 1.0e-4;
const HW_GUESS_LOWER: f64 = 0.3;
const HW_GUESS_UPPER: f64 = 1.0;
const HW_GUESS_STEP: f64 = 0.4;

struct Reducer {
    seasonal: bool,
    h: usize,
    interval: i64,
    half_interval: i64,
    include_fit: bool,
    y: Vec<f64>,
}

impl Reducer {
    fn round_time(&self, t: i64) -> i64 {
        let remainder = t % self.interval;
        if remainder > self.half_interval {
            (t / self.interval + 1) * self.interval
        } else {
            (t / self.interval) * self.interval
        }
    }

    fn constrain(x: &mut [f64]) {
        // Go's two comparisons: NaN stays NaN, as with clamp.
        for v in x.iter_mut().take(4) {
            *v = v.clamp(0.0, 1.0);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn next(
        alpha: f64,
        beta: f64,
        gamma: f64,
        phi: f64,
        phi_h: f64,
        y_t: f64,
        l_tp: f64,
        b_tp: f64,
        s_tm: f64,
        s_tmh: f64,
    ) -> (f64, f64, f64, f64) {
        let l_t = alpha * (y_t / s_tm) + (1.0 - alpha) * (l_tp + phi * b_tp);
        let b_t = beta * (l_t - l_tp) + (1.0 - beta) * phi * b_tp;
        let s_t = gamma * (y_t / (l_tp + phi * b_tp)) + (1.0 - gamma) * s_tm;
        let y_th = (l_t + phi_h * b_t) * s_tmh;
        (y_th, l_t, b_t, s_t)
    }

    /// The fitted and forecast values; mutates `params` as Go's does.
    fn forecast(&self, h: usize, params: &mut [f64]) -> Vec<f64> {
        Self::constrain(params);
        let mut y_t = self.y[0];
        let phi = params[3];
        let mut phi_h = phi;
        let mut l_t = params[4];
        let mut b_t = params[5];
        let (alpha, beta, gamma) = (params[0], params[1], params[2]);
        let mut m = 0usize;
        let mut so = 0usize;
        if self.seasonal {
            m = params.len() - 6;
            if m == 1 {
                params[6] = 1.0;
            }
            so = m - 1;
        }
        let l = self.y.len();
        let mut forecasted = vec![0.0; l + h];
        forecasted[0] = y_t;
        let (mut stm, mut stmh) = (1.0, 1.0);
        for t in 1..l + h {
            if self.seasonal {
                let hm = t % m;
                // Go's `(t-m+so)%m` on ints: t-m+so is never negative here (so >= m-1).
                stm = params[6 + (t + so - m) % m];
                stmh = params[6 + (t + hm + so - m) % m];
            }
            let (y, lt, bt, s_t) =
                Self::next(alpha, beta, gamma, phi, phi_h, y_t, l_t, b_t, stm, stmh);
            y_t = y;
            l_t = lt;
            b_t = bt;
            phi_h += crate::influxql::gomath::pow(phi, t as f64);
            if self.seasonal {
                params[6 + (t + so) % m] = s_t;
                so += 1;
            }
            forecasted[t] = y_t;
        }
        forecasted
    }

    fn sse(&self, params: &mut [f64]) -> f64 {
        let mut sse = 0.0;
        let forecasted = self.forecast(0, params);
        for (i, f) in forecasted.iter().enumerate() {
            if !self.y[i].is_nan() {
                if f.is_nan() {
                    return f64::INFINITY;
                }
                let diff = f - self.y[i];
                sse += diff * diff;
            }
        }
        sse
    }
}

/// The forecast of `points` (time, value; in time order, one per GROUP BY window of
/// `interval` ns): `h` points after the last (with `include_fit`, the fitted values
/// from the first point too), seasonal with period `m` when `m >= 2`. Empty when
/// there is too little data, as InfluxDB.
pub fn forecast(
    points: &[(i64, f64)],
    h: i64,
    m: i64,
    include_fit: bool,
    interval: i64,
) -> Vec<(i64, f64)> {
    let seasonal = m >= 2;
    let (h, m) = (h.max(0) as usize, m.max(0) as usize);
    let l = points.len();
    if l < 2 || (seasonal && l < m) || h == 0 || interval <= 0 {
        return Vec::new();
    }
    let mut r = Reducer {
        seasonal,
        h,
        interval,
        half_interval: interval / 2,
        include_fit,
        y: Vec::new(),
    };
    let start = r.round_time(points[0].0);
    let stop = r.round_time(points[l - 1].0);
    if (stop - start) / r.interval <= 0 {
        return Vec::new();
    }
    r.y.push(points[0].1);
    let mut t = start;
    for p in &points[1..] {
        let rounded = r.round_time(p.0);
        if rounded <= t {
            continue;
        }
        t += r.interval;
        while rounded != t {
            r.y.push(f64::NAN);
            t += r.interval;
        }
        r.y.push(p.1);
    }
    let y = &r.y;
    let mut l0 = 0.0;
    if r.seasonal {
        for v in y.iter().take(m) {
            if !v.is_nan() {
                l0 += (1.0 / m as f64) * v;
            }
        }
    } else {
        l0 += HW_WEIGHT * y[0];
    }
    let mut b0 = 0.0;
    if r.seasonal {
        let mut i = 0;
        while i < m && m + i < y.len() {
            if !y[i].is_nan() && !y[m + i].is_nan() {
                b0 += 1.0 / (m * m) as f64 * (y[m + i] - y[i]);
            }
            i += 1;
        }
    } else if !y[1].is_nan() {
        b0 = HW_WEIGHT * (y[1] - y[0]);
    }
    let s: Vec<f64> = if r.seasonal {
        (0..m)
            .map(|i| if !y[i].is_nan() { y[i] / l0 } else { 0.0 })
            .collect()
    } else {
        Vec::new()
    };
    let mut parameters = vec![0.0; 6 + s.len()];
    parameters[4] = l0;
    parameters[5] = b0;
    parameters[6..].copy_from_slice(&s);
    let optim = Optimizer::new();
    let mut min_sse = f64::INFINITY;
    let mut best: Option<Vec<f64>> = None;
    let mut alpha = HW_GUESS_LOWER;
    while alpha < HW_GUESS_UPPER {
        let mut beta = HW_GUESS_LOWER;
        while beta < HW_GUESS_UPPER {
            let mut gamma = HW_GUESS_LOWER;
            while gamma < HW_GUESS_UPPER {
                let mut phi = HW_GUESS_LOWER;
                while phi < HW_GUESS_UPPER {
                    parameters[0] = alpha;
                    parameters[1] = beta;
                    parameters[2] = gamma;
                    parameters[3] = phi;
                    let (sse, params) =
                        optim.optimize(&mut |p: &mut [f64]| r.sse(p), &parameters, HW_EPSILON, 1.0);
                    if sse < min_sse || best.is_none() {
                        min_sse = sse;
                        best = Some(params);
                    }
                    phi += HW_GUESS_STEP;
                }
                gamma += HW_GUESS_STEP;
            }
            beta += HW_GUESS_STEP;
        }
        alpha += HW_GUESS_STEP;
    }
    let Some(mut best) = best else {
        return Vec::new();
    };
    let forecasted = r.forecast(r.h, &mut best);
    let mut out = Vec::new();
    if r.include_fit {
        let first = points[0].0;
        for (i, v) in forecasted.iter().enumerate() {
            if !v.is_nan() {
                out.push((first + r.interval * i as i64, *v));
            }
        }
    } else {
        let last = points[l - 1].0;
        for (i, v) in forecasted[r.y.len()..].iter().enumerate() {
            if !v.is_nan() {
                out.push((last + r.interval * (i as i64 + 1), *v));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_little_data_forecasts_nothing_and_a_line_goes_on() {
        assert!(forecast(&[(0, 1.0)], 3, 0, false, 10).is_empty());
        assert!(forecast(&[(0, 1.0), (10, 2.0)], 0, 0, false, 10).is_empty());
        let line: Vec<(i64, f64)> = (0..10).map(|i| (i * 10, i as f64)).collect();
        let f = forecast(&line, 3, 0, false, 10);
        assert_eq!(
            f.iter().map(|p| p.0).collect::<Vec<_>>(),
            vec![100, 110, 120]
        );
        assert!(f.iter().all(|p| p.1.is_finite()));
        let fit = forecast(&line, 2, 0, true, 10);
        assert_eq!(fit.len(), 12);
        assert_eq!(fit[0], (0, 0.0));
    }
}
