//! ISO 4217 currencies with their minor-unit exponents.
//!
//! The table holds the active codes of ISO 4217 list one that have a minor unit (precious metals,
//! SDR and testing codes have none and cannot price goods, so they are left out). Withdrawn codes
//! (HRK, ANG, SLL, ZWL, ...) are refused: a new order in them is a client error. The exponent is
//! ISO's, not a payment provider's: Stripe, for one, treats MGA as zero-decimal; a gateway adapter
//! converts at its boundary.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// Longest prefix of a rejected code echoed back in [`DomainError::UnknownCurrency`].
const ECHO_MAX: usize = 8;

macro_rules! currencies {
    ($($variant:ident => $code:literal, $exponent:literal, $name:literal;)*) => {
        /// An active ISO 4217 currency. Serialised as its three-letter upper-case code.
        ///
        /// ```
        /// use commerce_domain::Currency;
        /// let yen = Currency::from_code("JPY")?;
        /// assert_eq!((yen.code(), yen.exponent()), ("JPY", 0));
        /// assert_eq!(Currency::Kwd.exponent(), 3);
        /// assert!(Currency::from_code("eur").is_err());
        /// # Ok::<(), commerce_domain::DomainError>(())
        /// ```
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "&'static str")]
        pub enum Currency {
            $(
                #[doc = concat!($name, " (", $code, ", ", $exponent, " decimals)")]
                $variant,
            )*
        }

        impl Currency {
            /// Every supported currency, in code order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];

            /// The three-letter ISO 4217 code, e.g. `"EUR"`.
            #[must_use]
            pub const fn code(self) -> &'static str {
                match self {
                    $(Self::$variant => $code,)*
                }
            }

            /// The number of decimals of the minor unit: 2 for EUR (cents), 0 for JPY, 3 for KWD.
            #[must_use]
            pub const fn exponent(self) -> u8 {
                match self {
                    $(Self::$variant => $exponent,)*
                }
            }

            /// The currency of an upper-case ISO 4217 code.
            ///
            /// # Errors
            /// [`DomainError::UnknownCurrency`] for anything else, lower case included: codes
            /// have one spelling on the wire.
            pub fn from_code(code: &str) -> Result<Self, DomainError> {
                match code {
                    $($code => Ok(Self::$variant),)*
                    _ => Err(DomainError::UnknownCurrency {
                        code: code.chars().take(ECHO_MAX).collect(),
                    }),
                }
            }
        }
    };
}

currencies! {
    Aed => "AED", 2, "UAE dirham";
    Afn => "AFN", 2, "Afghani";
    All => "ALL", 2, "Lek";
    Amd => "AMD", 2, "Armenian dram";
    Aoa => "AOA", 2, "Kwanza";
    Ars => "ARS", 2, "Argentine peso";
    Aud => "AUD", 2, "Australian dollar";
    Awg => "AWG", 2, "Aruban florin";
    Azn => "AZN", 2, "Azerbaijan manat";
    Bam => "BAM", 2, "Convertible mark";
    Bbd => "BBD", 2, "Barbados dollar";
    Bdt => "BDT", 2, "Taka";
    Bgn => "BGN", 2, "Bulgarian lev";
    Bhd => "BHD", 3, "Bahraini dinar";
    Bif => "BIF", 0, "Burundi franc";
    Bmd => "BMD", 2, "Bermudian dollar";
    Bnd => "BND", 2, "Brunei dollar";
    Bob => "BOB", 2, "Boliviano";
    Bov => "BOV", 2, "Mvdol";
    Brl => "BRL", 2, "Brazilian real";
    Bsd => "BSD", 2, "Bahamian dollar";
    Btn => "BTN", 2, "Ngultrum";
    Bwp => "BWP", 2, "Pula";
    Byn => "BYN", 2, "Belarusian ruble";
    Bzd => "BZD", 2, "Belize dollar";
    Cad => "CAD", 2, "Canadian dollar";
    Cdf => "CDF", 2, "Congolese franc";
    Che => "CHE", 2, "WIR euro";
    Chf => "CHF", 2, "Swiss franc";
    Chw => "CHW", 2, "WIR franc";
    Clf => "CLF", 4, "Unidad de fomento";
    Clp => "CLP", 0, "Chilean peso";
    Cny => "CNY", 2, "Yuan renminbi";
    Cop => "COP", 2, "Colombian peso";
    Cou => "COU", 2, "Unidad de valor real";
    Crc => "CRC", 2, "Costa Rican colon";
    Cup => "CUP", 2, "Cuban peso";
    Cve => "CVE", 2, "Cabo Verde escudo";
    Czk => "CZK", 2, "Czech koruna";
    Djf => "DJF", 0, "Djibouti franc";
    Dkk => "DKK", 2, "Danish krone";
    Dop => "DOP", 2, "Dominican peso";
    Dzd => "DZD", 2, "Algerian dinar";
    Egp => "EGP", 2, "Egyptian pound";
    Ern => "ERN", 2, "Nakfa";
    Etb => "ETB", 2, "Ethiopian birr";
    Eur => "EUR", 2, "Euro";
    Fjd => "FJD", 2, "Fiji dollar";
    Fkp => "FKP", 2, "Falkland Islands pound";
    Gbp => "GBP", 2, "Pound sterling";
    Gel => "GEL", 2, "Lari";
    Ghs => "GHS", 2, "Ghana cedi";
    Gip => "GIP", 2, "Gibraltar pound";
    Gmd => "GMD", 2, "Dalasi";
    Gnf => "GNF", 0, "Guinean franc";
    Gtq => "GTQ", 2, "Quetzal";
    Gyd => "GYD", 2, "Guyana dollar";
    Hkd => "HKD", 2, "Hong Kong dollar";
    Hnl => "HNL", 2, "Lempira";
    Htg => "HTG", 2, "Gourde";
    Huf => "HUF", 2, "Forint";
    Idr => "IDR", 2, "Rupiah";
    Ils => "ILS", 2, "New Israeli sheqel";
    Inr => "INR", 2, "Indian rupee";
    Iqd => "IQD", 3, "Iraqi dinar";
    Irr => "IRR", 2, "Iranian rial";
    Isk => "ISK", 0, "Iceland krona";
    Jmd => "JMD", 2, "Jamaican dollar";
    Jod => "JOD", 3, "Jordanian dinar";
    Jpy => "JPY", 0, "Yen";
    Kes => "KES", 2, "Kenyan shilling";
    Kgs => "KGS", 2, "Som";
    Khr => "KHR", 2, "Riel";
    Kmf => "KMF", 0, "Comorian franc";
    Kpw => "KPW", 2, "North Korean won";
    Krw => "KRW", 0, "Won";
    Kwd => "KWD", 3, "Kuwaiti dinar";
    Kyd => "KYD", 2, "Cayman Islands dollar";
    Kzt => "KZT", 2, "Tenge";
    Lak => "LAK", 2, "Lao kip";
    Lbp => "LBP", 2, "Lebanese pound";
    Lkr => "LKR", 2, "Sri Lanka rupee";
    Lrd => "LRD", 2, "Liberian dollar";
    Lsl => "LSL", 2, "Loti";
    Lyd => "LYD", 3, "Libyan dinar";
    Mad => "MAD", 2, "Moroccan dirham";
    Mdl => "MDL", 2, "Moldovan leu";
    Mga => "MGA", 2, "Malagasy ariary";
    Mkd => "MKD", 2, "Denar";
    Mmk => "MMK", 2, "Kyat";
    Mnt => "MNT", 2, "Tugrik";
    Mop => "MOP", 2, "Pataca";
    Mru => "MRU", 2, "Ouguiya";
    Mur => "MUR", 2, "Mauritius rupee";
    Mvr => "MVR", 2, "Rufiyaa";
    Mwk => "MWK", 2, "Malawi kwacha";
    Mxn => "MXN", 2, "Mexican peso";
    Mxv => "MXV", 2, "Mexican unidad de inversion";
    Myr => "MYR", 2, "Malaysian ringgit";
    Mzn => "MZN", 2, "Mozambique metical";
    Nad => "NAD", 2, "Namibia dollar";
    Ngn => "NGN", 2, "Naira";
    Nio => "NIO", 2, "Cordoba oro";
    Nok => "NOK", 2, "Norwegian krone";
    Npr => "NPR", 2, "Nepalese rupee";
    Nzd => "NZD", 2, "New Zealand dollar";
    Omr => "OMR", 3, "Rial Omani";
    Pab => "PAB", 2, "Balboa";
    Pen => "PEN", 2, "Sol";
    Pgk => "PGK", 2, "Kina";
    Php => "PHP", 2, "Philippine peso";
    Pkr => "PKR", 2, "Pakistan rupee";
    Pln => "PLN", 2, "Zloty";
    Pyg => "PYG", 0, "Guarani";
    Qar => "QAR", 2, "Qatari rial";
    Ron => "RON", 2, "Romanian leu";
    Rsd => "RSD", 2, "Serbian dinar";
    Rub => "RUB", 2, "Russian ruble";
    Rwf => "RWF", 0, "Rwanda franc";
    Sar => "SAR", 2, "Saudi riyal";
    Sbd => "SBD", 2, "Solomon Islands dollar";
    Scr => "SCR", 2, "Seychelles rupee";
    Sdg => "SDG", 2, "Sudanese pound";
    Sek => "SEK", 2, "Swedish krona";
    Sgd => "SGD", 2, "Singapore dollar";
    Shp => "SHP", 2, "Saint Helena pound";
    Sle => "SLE", 2, "Leone";
    Sos => "SOS", 2, "Somali shilling";
    Srd => "SRD", 2, "Surinam dollar";
    Ssp => "SSP", 2, "South Sudanese pound";
    Stn => "STN", 2, "Dobra";
    Svc => "SVC", 2, "El Salvador colon";
    Syp => "SYP", 2, "Syrian pound";
    Szl => "SZL", 2, "Lilangeni";
    Thb => "THB", 2, "Baht";
    Tjs => "TJS", 2, "Somoni";
    Tmt => "TMT", 2, "Turkmenistan new manat";
    Tnd => "TND", 3, "Tunisian dinar";
    Top => "TOP", 2, "Pa'anga";
    Try => "TRY", 2, "Turkish lira";
    Ttd => "TTD", 2, "Trinidad and Tobago dollar";
    Twd => "TWD", 2, "New Taiwan dollar";
    Tzs => "TZS", 2, "Tanzanian shilling";
    Uah => "UAH", 2, "Hryvnia";
    Ugx => "UGX", 0, "Uganda shilling";
    Usd => "USD", 2, "US dollar";
    Usn => "USN", 2, "US dollar (next day)";
    Uyi => "UYI", 0, "Uruguay peso en unidades indexadas";
    Uyu => "UYU", 2, "Peso uruguayo";
    Uyw => "UYW", 4, "Unidad previsional";
    Uzs => "UZS", 2, "Uzbekistan sum";
    Ved => "VED", 2, "Bolivar soberano (digital)";
    Ves => "VES", 2, "Bolivar soberano";
    Vnd => "VND", 0, "Dong";
    Vuv => "VUV", 0, "Vatu";
    Wst => "WST", 2, "Tala";
    Xaf => "XAF", 0, "CFA franc BEAC";
    Xcd => "XCD", 2, "East Caribbean dollar";
    Xcg => "XCG", 2, "Caribbean guilder";
    Xof => "XOF", 0, "CFA franc BCEAO";
    Xpf => "XPF", 0, "CFP franc";
    Yer => "YER", 2, "Yemeni rial";
    Zar => "ZAR", 2, "Rand";
    Zmw => "ZMW", 2, "Zambian kwacha";
    Zwg => "ZWG", 2, "Zimbabwe gold";
}

impl Currency {
    /// How many minor units make one major unit: `10^exponent`.
    #[must_use]
    pub const fn minor_per_major(self) -> i64 {
        10_i64.pow(self.exponent() as u32)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_code(s)
    }
}

impl TryFrom<String> for Currency {
    type Error = DomainError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::from_code(&value)
    }
}

impl TryFrom<&str> for Currency {
    type Error = DomainError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::from_code(value)
    }
}

impl From<Currency> for &'static str {
    fn from(currency: Currency) -> Self {
        currency.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponents_follow_iso_4217() {
        for (code, exponent) in [
            ("EUR", 2),
            ("USD", 2),
            ("JPY", 0),
            ("KRW", 0),
            ("VND", 0),
            ("CLP", 0),
            ("ISK", 0),
            ("BHD", 3),
            ("KWD", 3),
            ("JOD", 3),
            ("OMR", 3),
            ("TND", 3),
            ("IQD", 3),
            ("LYD", 3),
            ("CLF", 4),
        ] {
            let currency = Currency::from_code(code).expect("known code");
            assert_eq!(currency.exponent(), exponent, "{code}");
        }
    }

    #[test]
    fn every_code_round_trips_and_is_three_upper_case_letters() {
        for &currency in Currency::ALL {
            let code = currency.code();
            assert!(code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()));
            assert_eq!(Currency::from_code(code), Ok(currency));
        }
    }

    #[test]
    fn the_table_is_sorted_and_free_of_duplicates() {
        assert!(Currency::ALL.windows(2).all(|w| w[0].code() < w[1].code()));
    }

    #[test]
    fn unknown_lower_case_and_withdrawn_codes_are_refused() {
        for bad in ["", "eur", "EURO", "XAU", "XXX", "HRK", "ANG", "SLL"] {
            assert!(Currency::from_code(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unknown_code_echo_is_truncated() {
        let err = Currency::from_code(&"Z".repeat(1000)).expect_err("unknown");
        assert_eq!(
            err,
            DomainError::UnknownCurrency {
                code: "Z".repeat(8)
            }
        );
        assert_eq!(err.field(), "currency");
    }

    #[test]
    fn serde_uses_the_code() {
        assert_eq!(
            serde_json::to_string(&Currency::Eur).expect("serialises"),
            "\"EUR\""
        );
        assert_eq!(
            serde_json::from_str::<Currency>("\"JPY\"").expect("parses"),
            Currency::Jpy
        );
        assert!(serde_json::from_str::<Currency>("\"jpy\"").is_err());
    }
}
