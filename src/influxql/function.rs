//! InfluxQL's functions by name, parsed once (the parser resolves every call), so the
//! query engine chooses what to compute with a `match` on an enum, never by comparing
//! strings inside its loops.

/// What a function does with the points of a window (InfluxDB's classes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FunctionKind {
    /// One value from many (`count`, `mean`, ...).
    Aggregate,
    /// One (or a few) of the points themselves, with their times (`max`, `top`, ...).
    Selector,
    /// A sequence from a sequence (`derivative`, `moving_average`, ...).
    Transform,
    /// A value from values of one row (`abs`, `pow`, ...).
    Math,
    /// Future points from a series of window aggregates (`holt_winters`).
    Forecast,
}

macro_rules! functions {
    ($($variant:ident => $name:literal, $kind:ident;)*) => {
        /// An InfluxQL function.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Function {
            $($variant,)*
        }

        impl Function {
            /// The function of a (lower-case) name, if InfluxQL has one.
            pub fn parse(name: &str) -> Option<Function> {
                Some(match name {
                    $($name => Function::$variant,)*
                    _ => return None,
                })
            }

            /// Its name, as written in InfluxQL (and in column names).
            pub fn name(self) -> &'static str {
                match self {
                    $(Function::$variant => $name,)*
                }
            }

            pub fn kind(self) -> FunctionKind {
                match self {
                    $(Function::$variant => FunctionKind::$kind,)*
                }
            }
        }
    };
}

functions! {
    Count => "count", Aggregate;
    Sum => "sum", Aggregate;
    Mean => "mean", Aggregate;
    Median => "median", Aggregate;
    Mode => "mode", Aggregate;
    Spread => "spread", Aggregate;
    Stddev => "stddev", Aggregate;
    Integral => "integral", Aggregate;
    Distinct => "distinct", Aggregate;
    First => "first", Selector;
    Last => "last", Selector;
    Min => "min", Selector;
    Max => "max", Selector;
    Percentile => "percentile", Selector;
    Top => "top", Selector;
    Bottom => "bottom", Selector;
    Sample => "sample", Selector;
    Derivative => "derivative", Transform;
    NonNegativeDerivative => "non_negative_derivative", Transform;
    Difference => "difference", Transform;
    NonNegativeDifference => "non_negative_difference", Transform;
    MovingAverage => "moving_average", Transform;
    CumulativeSum => "cumulative_sum", Transform;
    Elapsed => "elapsed", Transform;
    HoltWinters => "holt_winters", Forecast;
    HoltWintersWithFit => "holt_winters_with_fit", Forecast;
    Abs => "abs", Math;
    Floor => "floor", Math;
    Ceil => "ceil", Math;
    Round => "round", Math;
    Sqrt => "sqrt", Math;
    Ln => "ln", Math;
    Log => "log", Math;
    Log2 => "log2", Math;
    Log10 => "log10", Math;
    Exp => "exp", Math;
    Pow => "pow", Math;
    Sin => "sin", Math;
    Cos => "cos", Math;
    Tan => "tan", Math;
    Asin => "asin", Math;
    Acos => "acos", Math;
    Atan => "atan", Math;
    Atan2 => "atan2", Math;
    Now => "now", Math;
}

impl Function {
    /// An aggregate, selector or transformation: it reads many points.
    pub fn reads_points(self) -> bool {
        self.kind() != FunctionKind::Math
    }

    pub fn is_transform(self) -> bool {
        self.kind() == FunctionKind::Transform
    }

    pub fn is_selector(self) -> bool {
        self.kind() == FunctionKind::Selector
    }

    /// Takes only numbers (`mean(*)` skips string and boolean fields).
    pub fn needs_numbers(self) -> bool {
        !matches!(
            self,
            Function::Count
                | Function::Distinct
                | Function::First
                | Function::Last
                | Function::Mode
                | Function::Sample
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_kinds_are_influxdbs() {
        for name in ["count", "non_negative_derivative", "top", "atan2", "now"] {
            assert_eq!(Function::parse(name).map(Function::name), Some(name));
        }
        assert_eq!(
            Function::parse("COUNT"),
            None,
            "the parser lower-cases first"
        );
        assert_eq!(Function::parse("nope"), None);
        assert!(Function::Max.is_selector() && Function::Max.reads_points());
        assert!(Function::Elapsed.is_transform() && !Function::First.needs_numbers());
        assert!(!Function::Abs.reads_points());
        assert!(Function::Mean.needs_numbers() && !Function::Count.needs_numbers());
    }
}
